# client/ fragment
