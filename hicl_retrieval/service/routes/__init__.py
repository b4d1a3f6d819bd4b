"""The service's routes, one module a concern: searching, reading posts and the index, changing it, the page."""

from . import page, posts, search, writes

ROUTERS = (search.router, posts.router, writes.router, page.router)
