"""Regional brain volumes from the registrations `elr-mri preprocess` made (`elr-mri volumes`)."""
