"""A labelling page served like ``emofuse serve``: plays a pool's clips, takes a label by
key and appends every answer to answers.csv at once (``emofuse label``)."""
