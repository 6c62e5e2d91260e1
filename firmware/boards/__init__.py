"""One module per board profile, each with make_board(cfg); sim.py is the host fake."""
