"""What the files of a release root say: names in paths, build rules, instructions, and the plan.

Files in, frozen dataclasses out; `plan` turns them into what to build, purely.
"""
