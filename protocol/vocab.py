"""The words of the domain as numbers: rating levels, indicators, workflow nodes, sources, ACK results.

Levels follow GB/T 39046-2020 appendix A.8 (1 = 非常满意 ... 5 = 非常不满意). Provinces that count the
other way are mapped by the gateway's upstream code profiles, never here.
"""

VERY_SATISFIED = 1      # 非常满意
SATISFIED = 2           # 满意
BASICALLY_SATISFIED = 3 # 基本满意
DISSATISFIED = 4        # 不满意
VERY_DISSATISFIED = 5   # 非常不满意

LEVELS = (VERY_SATISFIED, SATISFIED, BASICALLY_SATISFIED, DISSATISFIED, VERY_DISSATISFIED)


def is_bad(level):
    """不满意 and 非常不满意 are bad ratings (差评): they need a tag and open a work order."""
    return level == DISSATISFIED or level == VERY_DISSATISFIED


# Indicators (rules Art. 11) as bits, so a context can say which ones may be rated.
IND_OVERALL = 1   # 总体评价
IND_BUSINESS = 2  # 业务评价: the matter, process, efficiency
IND_SERVICE = 4   # 服务评价: staff attitude and ability

# Workflow node at which the case became ratable (rules Art. 17-18).
NODE_RECEIPT = 1     # 收件成功: only the receiving window's service may be rated
NODE_ACCEPTANCE = 2  # 受理
NODE_COMPLETION = 3  # 办结 (approval or refusal, no certificate)
NODE_PICKUP = 4      # 领证: certificate signed for at the window

# Indicators a node allows: a receipt rates the service alone (rules Art. 17).
NODE_INDICATORS = {
    NODE_RECEIPT: IND_SERVICE,
    NODE_ACCEPTANCE: IND_OVERALL | IND_BUSINESS | IND_SERVICE,
    NODE_COMPLETION: IND_OVERALL | IND_BUSINESS | IND_SERVICE,
    NODE_PICKUP: IND_OVERALL | IND_BUSINESS | IND_SERVICE,
}

# Where a rating came from. Only SRC_PRESS is a citizen's choice; the others carry no level from a
# person and must never be shown as one.
SRC_PRESS = 1           # the rater pressed or touched a level at the window
SRC_NOT_RATED = 2       # the window timed out: "not rated at the window" (no level)
SRC_SYSTEM_DEFAULT = 3  # set by the central side when the 7-day window closed (rules Art. 18)

# Result of an ACK (gateway -> device). The device deletes the rating from flash on ACK_STORED,
# ACK_DUPLICATE and ACK_DEAD_LETTER (the gateway holds it for review), and keeps it on ACK_RETRY and
# ACK_REJECTED. Every ACK is bound to the MAC of the rating it answers (SPEC 7.5).
ACK_STORED = 0       # durably committed now
ACK_DUPLICATE = 1    # committed earlier (a retransmission); not counted again
ACK_DEAD_LETTER = 2  # authentic, but not valid as a rating (replay, rule ...): kept for review
ACK_RETRY = 3        # the gateway cannot commit now (store full); keep it and send again later
ACK_REJECTED = 4     # the gateway could not authenticate this as your rating; kept as evidence


def device_releases(result):
    """True when an ACK result lets the device forget the rating: the single rule."""
    return result == ACK_STORED or result == ACK_DUPLICATE or result == ACK_DEAD_LETTER


_NAMES = ("LEVEL_NAMES", "INDICATOR_NAMES", "NODE_NAMES", "SOURCE_NAMES", "ACK_NAMES")


def __getattr__(name):
    """The *_NAMES tables live in protocol/names.py, loaded on first use (never on a device)."""
    from protocol.names import lookup
    return lookup(_NAMES, name)
