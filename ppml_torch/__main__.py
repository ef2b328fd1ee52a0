import sys

from .cli import main
from .runners.secretflow.launcher import follow_launcher

follow_launcher()  # a party of `ppml-torch launch`: the launcher's news from the first moment
sys.exit(main())
