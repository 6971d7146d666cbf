"""`python -m keras_models.distributed --processes 2 script.py ...`: see `keras_models.distributed.launcher`."""

import sys

from keras_models.distributed.launcher import main

sys.exit(main())
