"""`ops-onboard`: install, run and check released pods on the machine it runs on.

Never imports the release side: a host needs only `core` and this package.
"""
