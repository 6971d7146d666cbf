import sys
from pathlib import Path

# `gan_cases`, the GAN tests' shared helpers, lives beside the tests.
sys.path.insert(0, str(Path(__file__).parent))
