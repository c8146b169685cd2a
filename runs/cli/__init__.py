"""The `studio` command line: `az ml` v1 run commands against a Run Studio (`studio --help`).

    studio login --url http://127.0.0.1:8000 --token KEY
    studio folder attach -w myworkspace -e testexperiment
    studio run submit-script -c sklearn -e testexperiment train.py
    studio run list --experiment-name experiment --query "[?properties.author=='azureml-user']"
    studio run update -r RUNID --add-tag quality='fantastic run'
    studio run cancel -r RUNID

Built on runs.sdk and its HTTP client; imports no Django, so it works on any
host that reaches the studio. Modules:

- app: the parser, global options (-o, --query, --verbose, --debug), main()
- context: where the studio URL, token, workspace and experiment come from
- output: JMESPath queries and the json/jsonc/yaml/table/tsv formats
- records: the studio's JSON as the az-style records the CLI prints
- runconfig: `.studio/*.runconfig` files (`-c NAME`)
- errors: exit codes and one-line error messages
- commands/: one module per command group
"""

from __future__ import annotations

from runs.cli.app import main

__all__ = ["main"]
