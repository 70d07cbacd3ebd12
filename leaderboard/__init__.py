"""Run records (ID cards) and the leaderboard built from them."""
