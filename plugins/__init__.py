"""The built-in lingoforge task plugins, registered through the `lingoforge` entry-point group."""
