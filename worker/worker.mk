# worker/ fragment
