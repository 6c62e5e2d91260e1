"""The evaluator's screens: ui.Ui draws a view (firmware/views.py) and maps raw input to actions."""
