"""The contract between the rating flow (app.py) and the screens (ui/): what a screen shows,
and what a key or touch on it means. The flow builds a view (a plain dict) and asks the UI to
render it; the UI turns raw input on that view into one semantic action for the flow.

A view is {"screen": <name below>, ...keys listed for that screen}. Every view may also carry
"window" (window number text), "texts" (dict of string overrides from CONFIG) and "large_text"
(1: the large-text mode for the elderly, CONFIG large_text).

Screens and their keys:
  idle          staff_name, idle_text                   no case on this window
  case          context (CONTEXT record), ask (tuple of IND_* the rater may give here, from
                node and board), levels {"overall": n, "business": n, "service": n} chosen so
                far, item_levels {code: n}, qr (rate-later link or ""), left_s (whole
                seconds left to rate, or None)                              the rating screen
  tags          tags [CONFIG tag records offered, filtered to the bad indicator],
                cursor (index of the highlighted tag), chosen [codes]       after a bad level
  thanks        -                                        the rating is safe in flash
  not_rated     -                                        the window timed out without a press
  no_case       -                                        a press with nothing to rate
  storage_full  -                                        outbox full: presses refused
  busy          -                                        misuse guard tripped (button mashing)
  provisioning  device                                   no config yet
  error         message                                  anything else that stops the device
Nothing on any screen hints at a level: all five look alike, the same size and colour.

Raw input from a board: ("key", i) with i = 0..4 for the five buttons left to right
(K1..K5), or ("touch", x, y) in screen pixels.

Actions returned by Ui.action(view, event), or None when the input means nothing there:
  ("rate", indicator_name, level)   "overall" | "business" | "service", level 1..5
  ("rate_item", code, level)        a theme sub-item
  ("submit",)                       touch: the rater has finished the case screen
  ("tag_move", step)                five buttons: move the cursor by +1 / -1
  ("tag_toggle",)                   five buttons: choose / unchoose the tag under the cursor
  ("tag_pick", code)                touch: choose / unchoose that tag
  ("confirm",)                      finish the tag screen (ignored while nothing is chosen)
  ("back",)                         leave the tag screen for the case screen
On the five-button board the keys on the case screen map K1..K5 to levels 1..5 (非常满意 ...
非常不满意) of the one indicator asked; on the tags screen K1 = up, K2 = down, K3 = choose,
K5 = confirm, K4 = back.
"""

SCREENS = ("idle", "case", "tags", "thanks", "not_rated", "no_case", "storage_full", "busy",
           "provisioning", "error")

ACTIONS = ("rate", "rate_item", "submit", "tag_move", "tag_toggle", "tag_pick", "confirm", "back")

INDICATOR_FIELDS = ("overall", "business", "service")


def view(screen, **keys):
    if screen not in SCREENS:
        raise ValueError("unknown screen %r" % screen)
    keys["screen"] = screen
    return keys
