"""Built-in method plugins.  Each module is one plugin, registered through the ``filterbench`` entry-point group
in pyproject.toml exactly as a third-party plugin would be, so one broken module never hides the others."""
