"""The district clearing hub (通存通兑): a stack of its own, between the communities' ledgers."""
