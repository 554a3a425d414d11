"""通存通兑, the community side: transfers to and from other communities of the district."""
