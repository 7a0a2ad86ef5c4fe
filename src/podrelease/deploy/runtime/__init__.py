"""Running installed pods under podman, on the host `ops-onboard` manages.

- `podman`: the podman command line, with timeouts and one-line errors;
- `kube`: a pod.json rendered as a Kubernetes v1 Pod for `podman kube play`;
- `health`: waiting until a started pod's containers run and its check passes;
- `runner`: `start`, `stop` and `status` of one pod by label, built on the three.

Podman's storage (images, pods, containers) is the only state this package
keeps; everything in it is named deterministically from the installed pod, so
any of it can be found again, or removed, after a crash.
"""
