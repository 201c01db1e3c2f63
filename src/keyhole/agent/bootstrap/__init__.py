"""`keyhole run` inside the program: the sitecustomize that loads the agent, and starting it from the
plan the CLI prepared.
"""
