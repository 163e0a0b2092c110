"""The leaderboard report's templates and assets (a package so that a wheel carries them)."""
