"""The read side: the projection runner, the views, and queries over them."""
