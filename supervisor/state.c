/* The session table in state_dir (being written). */
#include "supervisor/hotplexd.h"

void
state_load(void)
{
}

void
state_dirty(void)
{
}

void
state_save(void)
{
}
