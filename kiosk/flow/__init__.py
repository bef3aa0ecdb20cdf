"""Enrollment flow: the steps a citizen walks through at the kiosk."""
