"""The ``coatnet`` command line: model-level commands, and plug-ins from higher layers (entry points).
Imports any of coatnet.

A plug-in builds its parser from the shared grammar this face lists (:mod:`coatnet.cli.options`)."""

from coatnet.cli.options import (
    HelpFormatter,
    OutputExistsError,
    add_attention_arg,
    add_command,
    add_compute_args,
    add_img_size_arg,
    add_limit_arg,
    add_model_arg,
    add_renamed,
    add_resume_arg,
    check_output,
    model_of,
    positive_int,
    say_kept,
)

__all__ = [
    "HelpFormatter",
    "OutputExistsError",
    "add_attention_arg",
    "add_command",
    "add_compute_args",
    "add_img_size_arg",
    "add_limit_arg",
    "add_model_arg",
    "add_renamed",
    "add_resume_arg",
    "check_output",
    "model_of",
    "positive_int",
    "say_kept",
]
