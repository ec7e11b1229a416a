"""Static leaderboard site rendered from the results store.

Kept free of torch (directly and through bench.api) so that the site can be rebuilt on
any machine that has only the records: `render_site(results_dir, out_dir)`.
"""

from bench.leaderboard.render import render_site

__all__ = ["render_site"]
