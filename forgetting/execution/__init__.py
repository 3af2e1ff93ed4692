"""Where a study's jobs run: the executor interface (`base`), its backends (in-process, local processes,
Ray, SLURM through submitit), the jobs themselves (`jobs`) and the settings that pick one (`settings`)."""
