from edgepose.cli import run

run()
