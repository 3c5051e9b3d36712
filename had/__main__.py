from had.cli import app

app()
