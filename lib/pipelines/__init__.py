"""One module per job, named as the job: jobs/<job>.py parses arguments and calls lib/pipelines/<job>.py."""
