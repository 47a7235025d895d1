# supervisor/ fragment
