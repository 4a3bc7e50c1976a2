"""The leaderboard library: evaluation protocol runs, statistics, the store and rendered tables/pages.

No argparse here: everything is callable from Python.
"""
