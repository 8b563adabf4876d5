import sys

from host.cli.main import main

sys.exit(main())
