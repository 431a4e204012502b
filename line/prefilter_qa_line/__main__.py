"""`python -m prefilter_qa_line ...` = the `prefilter-qa-line` console script."""

import sys

from prefilter_qa_line.cli import main

sys.exit(main())
