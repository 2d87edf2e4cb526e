"""Run the black-box tests and print "N passed, N failed" last.

With no argument every tests/blackbox/test_*.py runs (what `make test`
does); arguments choose files or tests instead, as paths or as unittest
names: `run.py tests/blackbox/test_http.py test_limits.Pipelining`."""
import os
import sys
import unittest

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)
loader = unittest.defaultTestLoader
if len(sys.argv) > 1:
    names = []
    for arg in sys.argv[1:]:
        if arg.endswith(".py"):
            arg = os.path.basename(arg)[:-3]
        names.append(arg)
    suite = loader.loadTestsFromNames(names)
else:
    suite = loader.discover(here, pattern="test_*.py")
result = unittest.TextTestRunner(verbosity=2, stream=sys.stdout).run(suite)
failed = len(result.failures) + len(result.errors)
passed = result.testsRun - failed - len(result.skipped)
print("%d passed, %d failed" % (passed, failed))
sys.exit(1 if failed else 0)
