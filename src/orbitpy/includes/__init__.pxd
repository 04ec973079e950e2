# C declarations cimported by _core.pyx (not a Python package: nothing here
# is imported at run time, and nothing here is installed).
