"""Medical report reading: photo of a paper report → structured items, checks and a pregnancy risk grade."""
