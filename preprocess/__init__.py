"""Raw T1 scans to template space (N4, ANTs registration, QC), resumable and shardable.

CPU only (antspyx + nibabel); it never imports torch. Entry points: `preprocess.cli.main`
(`elr-mri preprocess`) and `preprocess.cli.merge_main` (`elr-mri preprocess-merge`).
"""
