"""Architectures that ship with edgekit: the bundled Fashion-MNIST teacher lives here so that
`--arch edgekit.zoo.resnet:fashion_resnet` can rebuild it from a state_dict."""
