"""Ray job entry points and the `smooth-reading` command line."""
