"""Service requests (orders): 6+X categories and tariffs, posting, feed, lifecycle, matching."""
