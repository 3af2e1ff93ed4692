"""Study kinds: each owns its schema section, its grid, its stage after training and its report
(`base.StudyKind`); `registry` holds them by the name a study file gives as ``[study] kind``."""
