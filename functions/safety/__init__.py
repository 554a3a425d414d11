"""Safety (feature 7): insurance records of accepted services and check-in/out photos (影像留存)."""
