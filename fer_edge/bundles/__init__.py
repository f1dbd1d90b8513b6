"""What goes to the devices (host side): the Jetson bundle and its engine check sets, the DeepLens
Lambda zip and model, the Greengrass V2 component, and their deploys to AWS."""
