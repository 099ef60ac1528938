"""Which clip to label next: ranking an unlabelled pool by what a trained bundle is unsure
of and by how far apart the clips lie (``emofuse suggest``)."""
