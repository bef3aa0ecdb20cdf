"""Camera backends: the citizen's face photo, as RGB frames."""
