from pate_lightning.pipeline.cli import cli_main

cli_main()
