import sys
from pathlib import Path

# `svm_terms`, the SVM tests' error measure, lives beside the tests.
sys.path.insert(0, str(Path(__file__).parent))
