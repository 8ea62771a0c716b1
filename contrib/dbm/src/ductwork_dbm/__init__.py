"""A ductwork cache on Python's ``dbm`` files (the worked example of a third-party plugin)."""
