"""Indicator backends: status light, buzzer and the call-operator button."""
