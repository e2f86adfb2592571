"""Typed, strictly validated run configuration.

A run is described by one YAML file. Every section is a dataclass, so the defaults and the
allowed values are written down in one place, and a typo in a key or a value of the wrong type
is reported as one line that names the key and the file instead of silently doing something else.

The rest of the code imports from here; the parts live in:
- `schema`: the sections (dataclasses) and ways to read settings off them;
- `loading`: `load_config` (`load_run_config`: a run folder's, checked whole) and `config_from_dict`, from YAML and `--set` to a checked `RunConfig`;
- `strict_yaml`: the YAML reader that refuses what YAML 1.1 would silently reread, and `--set` overrides;
- `coercion`: each value checked against its setting's type;
- `checks`: ranges and settings that contradict each other, at load and when a run starts;
- `resume`: what a resumed run may change, and the paths recorded absolute;
- `unread`: `--set` overrides the chosen loss, schedule, model or data set does not read.
"""

from elr_mri.config.checks import (NUMERIC_RANGES, check_augment_settings, check_new_run_settings,
                                   check_noise_fits_data, check_noise_settings)
from elr_mri.config.loading import (RUN_RECORD_KEYS, SELECTION_RULE_KEY, config_from_dict, load_config,
                                    load_run_config)
from elr_mri.config.resume import (
    PATH_KEYS, RESUME_MAY_CHANGE, first_resume_change, refuse_resume_changes, with_absolute_paths,
)
from elr_mri.config.schema import (
    IMAGE_EVAL_BATCH, ConfigError, DataConfig, ELRPlusConfig, LossConfig, ModelConfig, MRIDataConfig, NoiseConfig,
    OptimConfig, RunConfig, ScheduleConfig, TrainLoopConfig, config_to_dict, dotted_keys, evaluation_batch_size,
    flat_settings, setting_value,
)
from elr_mri.config.strict_yaml import apply_overrides
from elr_mri.config.unread import LOSS_READS, MODEL_READS, SCHEDULE_READS, setting_text, unread_overrides

__all__ = [
    "ConfigError",
    "DataConfig",
    "MRIDataConfig",
    "NoiseConfig",
    "ModelConfig",
    "LossConfig",
    "ELRPlusConfig",
    "OptimConfig",
    "ScheduleConfig",
    "TrainLoopConfig",
    "RunConfig",
    "load_config",
    "load_run_config",
    "evaluation_batch_size",
    "IMAGE_EVAL_BATCH",
    "apply_overrides",
    "config_from_dict",
    "config_to_dict",
    "flat_settings",
    "setting_value",
    "dotted_keys",
    "RUN_RECORD_KEYS",
    "SELECTION_RULE_KEY",
    "RESUME_MAY_CHANGE",
    "refuse_resume_changes",
    "first_resume_change",
    "check_noise_settings",
    "check_noise_fits_data",
    "check_augment_settings",
    "check_new_run_settings",
    "NUMERIC_RANGES",
    "with_absolute_paths",
    "PATH_KEYS",
    "LOSS_READS",
    "MODEL_READS",
    "SCHEDULE_READS",
    "unread_overrides",
    "setting_text",
]
