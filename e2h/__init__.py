"""E2H Curriculum Studio: easy-to-hard curriculum GRPO training for LLM reasoning.

Import the pieces you need from their modules (``e2h.schedulers``, ``e2h.sampler`` ...);
this package imports nothing heavy so the server and the CLI start fast.
"""

__version__ = "0.1.0"
