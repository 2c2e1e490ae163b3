from digestbot.cli import main

main(prog_name="digestbot")
