"""The HTTP search service (``hicl-retrieval serve``): an interface beside the command line."""
