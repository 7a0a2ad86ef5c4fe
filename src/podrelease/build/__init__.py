"""Making the artifacts a plan asks for: images, pod directories, tips, bundles."""
