"""The htmx UI, one module per area. Each URL serves its whole page, or only its fragment for an
htmx request; views read through selectors, take input through forms and write through services."""
